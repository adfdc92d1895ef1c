"""Clients for models served by TF Serving.

    from mmzoo.serving import GrpcClient, RestClient
    rest = RestClient("concat_classifier", port=8501)
    rest.predict(images=["cat.jpg"], texts=["a red circle"])
    grpc_client = GrpcClient("concat_classifier", target="localhost:8500")
    grpc_client.predict(images=["cat.jpg"], texts=["a red circle"])

Both retry when the server is unavailable and raise ``ServingError`` with the
server's message otherwise. The gRPC client needs ``tensorflow-serving-api``
(``pip install 'mmzoo[serving]'``); the REST client only the standard library.
"""

from mmzoo.serving.common import ServingError
from mmzoo.serving.rest_client import RestClient


def __getattr__(name):
    if name == "GrpcClient":
        from mmzoo.serving.grpc_client import GrpcClient

        return GrpcClient
    raise AttributeError(f"module 'mmzoo.serving' has no attribute {name!r}")


__all__ = ["GrpcClient", "RestClient", "ServingError"]
