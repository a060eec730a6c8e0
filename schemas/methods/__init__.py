"""Every method and the generic step library, each declared once (see `schemas.methods.base`)."""

from __future__ import annotations

from schemas.methods import c2syn, generic, ptalign
from schemas.methods.base import MethodDeclaration

METHODS: tuple[MethodDeclaration, ...] = (generic.METHOD, c2syn.METHOD, ptalign.METHOD)
