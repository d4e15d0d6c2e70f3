"""Signed job callbacks (docs/llms-full.md, "Callbacks").

``urls`` judges targets (at submit and again at send time), ``verify`` signs and checks
signatures (importable without Ray or the store, so receivers can use it), ``queue`` keeps the
delivery state in the store, ``send`` makes one POST to a checked address and ``delivery`` is the
sender loop each API replica runs. This package imports nothing on its own, so
``from computalot.callbacks.verify import verify_callback_signature`` stays light.
"""
