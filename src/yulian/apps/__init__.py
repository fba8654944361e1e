"""Applications built only from yulian's own parts (issue 8): a financial sentiment monitor, a recommender and a
customer-service bot. Each has a `yulian app NAME` command and a small page served by `yulian serve`."""

__all__: list[str] = []
