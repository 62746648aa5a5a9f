"""The serving stage: a bundle behind one ``recommend`` that routes every user
(``recsys.serve.routing``), an HTTP API and a page over it (``recsys.serve.app``,
``python -m recsys.serve``). Loading it imports neither MLflow nor Hydra."""
