"""A key/value cache that appends in place.

transformers' ``DynamicLayer`` grows each layer's keys and values with ``torch.cat``, so every decoding step copies
the whole cache: 30 layers x 2 tensors x the prompt's length, for each new token. :class:`AppendingLayer` keeps the
same tensors inside a buffer with room to spare and writes each new token into it; ``keys`` and ``values`` are
views of the filled part, so attention reads exactly what it read before. Measured on the embedded model in bf16 (32
summarization prompts, 64 new tokens, 2 threads): 22.9 s -> 19.3-20.1 s at 3 shots (737 prompt tokens on average),
with identical replies; 12.6 s -> 11.1 s at 0 shots with a prototype of the same layer.
"""

from __future__ import annotations

from transformers.cache_utils import DynamicCache, DynamicLayer

#: free positions a (re)allocated buffer keeps beyond what it holds, or a quarter of that length if more
MIN_ROOM = 256


class AppendingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are the filled part of a larger buffer: appending writes into the
    buffer. Whatever replaces ``keys`` with another tensor (``batch_repeat_interleave``, ``batch_select_indices``)
    makes the next append start a new buffer; ``crop`` keeps the buffer, and the next append overwrites what it cut."""

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held = self.get_seq_length()
        total = held + key_states.shape[-2]
        buffer = getattr(self, "_buffer", None)
        if buffer is None or not _fills_start_of(self.keys, buffer[0], total) or held == 0:
            buffer = self._allocate(key_states, value_states, held, total)
        keys, values = buffer
        keys[:, :, held:total] = key_states
        values[:, :, held:total] = value_states
        self.keys, self.values = keys[:, :, :total], values[:, :, :total]
        return self.keys, self.values

    def _allocate(self, key_states, value_states, held: int, total: int):
        batch, heads = key_states.shape[:2]
        capacity = total + max(MIN_ROOM, total // 4)
        keys = key_states.new_empty((batch, heads, capacity, key_states.shape[-1]))
        values = value_states.new_empty((batch, heads, capacity, value_states.shape[-1]))
        if held:
            keys[:, :, :held] = self.keys
            values[:, :, :held] = self.values
        self._buffer = (keys, values)
        return self._buffer

    def reset(self) -> None:
        self._buffer = None
        super().reset()


def _fills_start_of(view, buffer, total: int) -> bool:
    """Whether ``view`` is the start of ``buffer`` along the sequence axis and ``total`` positions fit in it."""
    return (
        view.data_ptr() == buffer.data_ptr()
        and view.shape[:2] == buffer.shape[:2]
        and view.stride() == buffer.stride()
        and total <= buffer.shape[-2]
    )


def appending(cache: DynamicCache) -> DynamicCache:
    """``cache`` with each of its plain dynamic layers appending in place (other layer kinds, such as sliding
    windows, are left as they are); returns the same object."""
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layer.__class__ = AppendingLayer
    if getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:  # a cache without config adds layers lazily
        cache.layer_class_to_replicate = AppendingLayer
    return cache


def appending_cache(config) -> DynamicCache:
    """An empty cache for a model with ``config`` whose plain layers append in place."""
    return appending(DynamicCache(config=config.get_text_config(decoder=True)))
