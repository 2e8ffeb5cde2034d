"""The browser test runs only when asked: ``make browser-test`` sets PINNKIT_BOOK_HTML to the built book.

The plain ``pytest tests`` pass (``make test``'s first step) does not collect it, so it never runs on a stale or
missing ``_build``. By hand: ``PINNKIT_BOOK_HTML=_build/html pytest tests/browser`` after ``make book``.
"""
import os

if not os.environ.get("PINNKIT_BOOK_HTML"):
    collect_ignore_glob = ["test_*.py"]
