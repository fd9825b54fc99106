"""Pretraining the tiny zoo on CPU: each family's objective, and the card beside each checkpoint.

A zoo member is a twin whose builder pretrains it (``twin._target_`` in a ``conf/zoo`` recipe);
``models.zoo.resolve_checkpoint`` builds it once per recipe, like any twin.
"""
