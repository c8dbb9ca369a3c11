"""The providers, one folder each: ``providers/<slug>/``.

A folder holds everything one provider is: ``__init__.py`` declares its ``METADATA`` (a
``dashtam_pipeline.registry.ProviderMetadata``: name, category, auth, capabilities,
datasets, settings, limits, and where its code is), ``client.py`` its HTTP client,
``sandbox.py`` the routes the built-in sandbox answers in its name and, for OAuth, its
``OAuthFlow``. Nothing in the core lists the folders: ``registry.discover_providers``
finds them with ``pkgutil.iter_modules`` over this package's ``__path__``.

``DASHTAM_PROVIDERS_PATH`` adds folders to that path, so a provider can live outside this
repository (and tests can add a throwaway one without writing into the package).
"""

from __future__ import annotations

from dashtam_pipeline.registry import extra_provider_dirs

__path__ = [*__path__, *(d for d in extra_provider_dirs() if d not in __path__)]
