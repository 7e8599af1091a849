"""Where models come from: the file format (safetensors + JSON), the registry (bundled, built in, cached, downloadable;
what is offered), ``drdm models list`` and the automatic choice of a model for an image. The bundled ``cmr-2d`` lives in
``bundled/``. Nothing is imported here: :mod:`drdm.model_store.choice` stays importable without PyTorch."""
