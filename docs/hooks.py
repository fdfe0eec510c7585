"""MkDocs hook of the docs site: the SDK's docstrings use Sphinx roles (``:class:`X```),
which mkdocstrings renders as the role's text before the code span; drop the role."""

import re

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|mod|attr|exc|obj):(?=<code)")


def on_page_content(html: str, **_kwargs) -> str:
    return ROLE.sub("", html)
