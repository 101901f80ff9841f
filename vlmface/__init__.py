from vlmface.errors import VlmfaceError
