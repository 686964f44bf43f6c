"""regularize"""

__all__: list[str] = []
