"""Where models come from: the file format (safetensors + JSON, ``files``), the catalogue of named models
(``registry``), loading (``loading``: ``load_model``, ``load_for_image``), downloads and the cache (``download``),
``drdm models import`` (``importing``), what the front ends offer (``offered``), ``drdm models list`` (``listing``) and
the automatic choice of a model for an image (``choice``). The bundled ``cmr-2d`` lives in ``bundled/``. Nothing is
imported here: :mod:`drdm.model_store.choice` stays importable without PyTorch."""
