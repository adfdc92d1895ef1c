"""In-test doubles of TF Serving: REST (HTTP) and gRPC, running a real SavedModel.

They reproduce TF Serving's wire formats (columnar ``inputs``/``outputs``
JSON with ``{"b64": ...}`` strings and the unnamed single-output response;
``PredictRequest``/``PredictResponse`` and ``GetModelMetadata`` over gRPC)
and its error shapes (``{"error": message}`` with an HTTP status; gRPC status
and details). Both bind 127.0.0.1 on a free port (or ``port``), serve from
daemon threads and stop by themselves after ``lifetime`` seconds. They serve
one ``ServedModel``, or every model of a TF Serving base path
(``ServedBasePath``: each at its latest version, as the server's file-system
poll picks up a new one).

Classify and Regress (REST ``:classify`` / ``:regress`` with ``{"examples":
[...]}`` and a ``{"results": ...}`` answer; gRPC ``Classify`` / ``Regress``)
follow tensorflow_serving/servables/tensorflow/classifier.cc and
regressor.cc: the signature's method name must be the classify / regress one
(as with ``--enable_signature_method_name_check``), its one input ``inputs``
is fed the serialized Examples, and the outputs are checked (``classes``
string / ``scores`` float ``[batch, classes]``; ``outputs`` float ``[batch]``
or ``[batch, 1]``) before they become the response.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tensorflow-text ops)
from tensorflow.core.framework import types_pb2


class ServedModel:
    """A loaded SavedModel plus what the doubles need to run and describe it."""

    def __init__(self, name, version_dir, version=1):
        self.name = name
        self.version = int(version)
        self.version_dir = os.fspath(version_dir)
        self.loaded = tf.saved_model.load(str(version_dir))
        self.lock = threading.Lock()
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(str(version_dir), "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        self.signature_def = dict(proto.meta_graphs[0].signature_def)

    def get(self, name):
        """This model for a request naming ``name``, else None (as ``ServedBasePath.get``)."""
        return self if name == self.name else None

    def run(self, signature_name, inputs: dict) -> dict:
        if signature_name not in self.loaded.signatures:
            raise KeyError(f"Serving signature name: \"{signature_name}\" not found in signature def")
        fn = self.loaded.signatures[signature_name]
        specs = fn.structured_input_signature[1]
        missing = sorted(set(specs) - set(inputs))
        if missing:
            raise ValueError(f"Missing inputs {missing} for signature {signature_name}")
        feed = {k: tf.constant(inputs[k], dtype=specs[k].dtype) for k in specs}
        with self.lock:
            outputs = fn(**feed)
        return {k: v.numpy() for k, v in outputs.items()}

    def signature_defs(self) -> dict:
        out = {}
        for name, fn in self.loaded.signatures.items():

            def describe(spec):
                shape = [-1 if d is None else d for d in spec.shape.as_list()]
                # TF Serving names dtypes by the DataType enum: DT_FLOAT (not DT_FLOAT32), DT_STRING, DT_INT32.
                dtype = types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
                return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d)} for d in shape]}}

            out[name] = {
                "inputs": {k: describe(s) for k, s in fn.structured_input_signature[1].items()},
                "outputs": {k: describe(s) for k, s in fn.structured_outputs.items()},
                "method_name": self.signature_def[name].method_name,
            }
        return out

    def _run_examples(self, method, signature_name, examples: list) -> dict:
        """TF Serving's checks of a classify/regress signature, then the Examples through it."""
        if not examples:
            raise ValueError("Input is empty.")
        if signature_name not in self.signature_def:
            raise KeyError(f"No signature was found with the name: {signature_name}")
        sig = self.signature_def[signature_name]
        kind = {"classify": "classification", "regress": "regression"}[method.rsplit("/", 1)[-1]]
        if sig.method_name != method:
            raise ValueError(f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}")
        if list(sig.inputs) != ["inputs"]:
            raise ValueError(f"No {kind} inputs found in SignatureDef (inputs: {sorted(sig.inputs)})")
        return self.run(signature_name, {"inputs": np.array(examples, dtype=object)})

    def classify(self, signature_name, examples: list) -> list:
        """``[[(label, score), ...] per example]`` as classifier.cc builds ClassificationResult."""
        out = self._run_examples("tensorflow/serving/classify", signature_name, examples)
        classes, scores = out.get("classes"), out.get("scores")
        for name, value, dtype in (("classes", classes, object), ("scores", scores, np.float32)):
            if value is not None and (value.ndim != 2 or value.dtype != dtype or len(value) != len(examples)):
                raise ValueError(f"Expected {name} Tensor of shape [batch_size num_classes] and {dtype.__name__}. "
                                 f"Got: {value.shape} {value.dtype}")
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise ValueError("Tensors class and score should match in dim_size(1).")
        width = (classes if classes is not None else scores).shape[1]
        return [[(classes[i, c].decode() if classes is not None else "",
                  float(scores[i, c]) if scores is not None else 0.0) for c in range(width)]
                for i in range(len(examples))]

    def regress(self, signature_name, examples: list) -> list:
        """One float per example, as regressor.cc builds RegressionResult."""
        outputs = self._run_examples("tensorflow/serving/regress", signature_name, examples)
        if list(outputs) != ["outputs"]:
            raise ValueError(f"No regression outputs found in SignatureDef (outputs: {sorted(outputs)})")
        value = outputs["outputs"]
        if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)) or value.dtype != np.float32:
            raise ValueError(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                             f"of DT_FLOAT but got {value.shape} {value.dtype}")
        if value.shape[0] != len(examples):
            raise ValueError(f"Input batch size did not match output batch size: {len(examples)} vs. {value.shape[0]}")
        return [float(v) for v in value.reshape(-1)]


class ServedBasePath:
    """Every model under a base path (``BASE/NAME/VERSION/saved_model.pb``), each at its latest version.

    A version written after the start is served from the next request on, as TF Serving's file-system
    poll loads it (within ``--file_system_poll_wait_seconds``, 1 s by default)."""

    def __init__(self, base):
        self.base = os.fspath(base)
        self._loaded = {}
        self._lock = threading.Lock()

    def get(self, name):
        """The model ``name`` at its latest version (``mmzoo.export.resolve_export_dir``), else None."""
        from mmzoo.export import resolve_export_dir

        try:
            version_dir = resolve_export_dir(os.path.join(self.base, name))
        except FileNotFoundError:
            return None
        version = os.path.basename(version_dir)
        if not version.isdigit():  # BASE/NAME/saved_model.pb: not a servable layout
            return None
        with self._lock:
            served = self._loaded.get(name)
            if served is None or served.version != int(version):
                served = self._loaded[name] = ServedModel(name, version_dir, int(version))
        return served


def example_from_json(features: dict) -> bytes:
    """One JSON example of a REST classify/regress request, as TF Serving's JSON mapping builds the
    ``tf.train.Example``: strings and ``{"b64"}`` -> bytes_list, whole numbers -> int64_list,
    other numbers -> float_list; a value or a list of values."""
    example = tf.train.Example()
    for key, value in features.items():
        values = value if isinstance(value, list) else [value]
        feature = example.features.feature[key]
        if all(isinstance(v, (str, dict)) for v in values):
            feature.bytes_list.value.extend(_from_json(v) for v in values)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            feature.int64_list.value.extend(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            feature.float_list.value.extend(values)
        else:
            raise ValueError(f"Unsupported value for feature {key!r}: {value!r}")
    return example.SerializeToString()


class _Faults:
    """Make the next ``n`` requests fail as unavailable (retry tests)."""

    def __init__(self):
        self.unavailable = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        self.requests = 0

    def take(self):
        with self.lock:
            self.requests += 1
            if self.unavailable > 0:
                self.unavailable -= 1
                return True
            return False


def _json_value(array: np.ndarray, name: str):
    if array.dtype == object or array.dtype.kind == "S":
        def enc(v):
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(v).decode("ascii")}
            return v.decode("utf-8")

        return np.vectorize(enc, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _rest_examples(served: ServedModel, verb: str, body: bytes):
    """``(HTTP status, JSON payload)`` of a REST ``:classify`` / ``:regress`` request."""
    try:
        request = json.loads(body)
    except ValueError as error:
        return 400, {"error": f"JSON Parse error: {error}"}
    if not isinstance(request.get("examples"), list):
        return 400, {"error": "'examples' key is missing or not an array"}
    signature = request.get("signature_name") or "serving_default"
    try:
        examples = [example_from_json(e) for e in request["examples"]]
        return 200, {"results": getattr(served, verb)(signature, examples)}
    except tf.errors.InvalidArgumentError as error:
        return 400, {"error": error.message}
    except (KeyError, ValueError) as error:
        return 400, {"error": str(error).strip('"')}


def _example_response(served: ServedModel, kind: str, request, abort):
    """The gRPC ``ClassificationResponse`` / ``RegressionResponse`` of a request (``abort(code, details)`` on error)."""
    import grpc
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    signature = request.model_spec.signature_name or "serving_default"
    examples = [e.SerializeToString() for e in request.input.example_list.examples]
    try:
        results = getattr(served, kind)(signature, examples)
    except tf.errors.InvalidArgumentError as error:
        abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
    except (KeyError, ValueError) as error:
        abort(grpc.StatusCode.INVALID_ARGUMENT, str(error).strip('"'))
    if kind == "classify":
        response = classification_pb2.ClassificationResponse()
        for row in results:
            response.result.classifications.add().classes.extend(
                classification_pb2.Class(label=label, score=score) for label, score in row)
    else:
        response = regression_pb2.RegressionResponse()
        response.result.regressions.extend(regression_pb2.Regression(value=v) for v in results)
    response.model_spec.name = served.name
    response.model_spec.version.value = served.version
    response.model_spec.signature_name = signature
    return response


class _Double:
    """What both doubles share: the served model, the faults, and a lifetime
    timer that ``start`` arms and ``stop`` cancels. Subclasses serve in
    ``_serve`` and shut their server down in ``_shut_down``."""

    def __init__(self, served, lifetime: float):
        self.served = served  # a ServedModel or a ServedBasePath
        self.faults = _Faults()
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    def start(self):
        self._serve()
        self._timer.start()
        return self

    def stop(self):
        self._timer.cancel()
        self._shut_down()

    def model(self, name, version=None):
        """The ServedModel a request for ``name`` (and ``version``, if given) reaches, or None (NOT_FOUND)."""
        served = self.served.get(name)
        if served is None or (version is not None and int(version) != served.version):
            return None
        return served


class RestDouble(_Double):
    """``POST /v1/models/NAME[/versions/N]:predict|:classify|:regress``, ``GET .../metadata``, ``GET /v1/models/NAME``."""

    _PATH = re.compile(
        r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<verb>:predict|:classify|:regress|/metadata)?$"
    )

    def __init__(self, served, lifetime=120.0, port=0):
        super().__init__(served, lifetime)
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status, payload):
                body = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def _route(self):
                if double.faults.delay:
                    threading.Event().wait(double.faults.delay)
                if double.faults.take():
                    return self._send(503, {"error": "Servable not available (simulated)"})
                match = double._PATH.match(self.path)
                if not match:
                    return self._send(404, {"error": f"Malformed request: {self.command} {self.path}"})
                name, version, verb = match["name"], match["version"], match["verb"]
                served = double.model(name, version)
                if served is None:
                    return self._send(404, {"error": f"Servable not found for request: Specific({name}, {version})"})
                if self.command == "GET" and verb is None:
                    return self._send(200, {"model_version_status": [{"version": str(served.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
                if self.command == "GET" and verb == "/metadata":
                    return self._send(200, {
                        "model_spec": {"name": name, "signature_name": "", "version": str(served.version)},
                        "metadata": {"signature_def": {"signature_def": served.signature_defs()}},
                    })
                if self.command == "POST" and verb in (":classify", ":regress"):
                    return self._examples(served, verb[1:])
                if self.command == "POST" and verb == ":predict":
                    length = int(self.headers.get("Content-Length", 0))
                    try:
                        request = json.loads(self.rfile.read(length))
                    except ValueError as error:
                        return self._send(400, {"error": f"JSON Parse error: {error}"})
                    if "inputs" not in request:
                        return self._send(400, {"error": "Missing 'inputs' or 'instances' key"})
                    signature = request.get("signature_name", "serving_default")
                    inputs = request["inputs"]
                    if not isinstance(inputs, dict):
                        inputs = {"__single__": inputs}
                    try:
                        outputs = served.run(signature, {k: _from_json(v) for k, v in inputs.items()})
                    except tf.errors.InvalidArgumentError as error:
                        return self._send(400, {"error": error.message})
                    except (KeyError, ValueError) as error:
                        return self._send(400, {"error": str(error).strip('"')})
                    encoded = {k: _json_value(v, k) for k, v in outputs.items()}
                    if len(encoded) == 1:  # TF Serving drops the name of a single output
                        encoded = next(iter(encoded.values()))
                    return self._send(200, {"outputs": encoded})
                return self._send(405, {"error": f"Unsupported method {self.command} on {self.path}"})

            def _examples(self, served, verb):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                return self._send(*_rest_examples(served, verb, body))

            do_GET = _route
            do_POST = _route

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _serve(self):
        self.thread.start()

    def _shut_down(self):
        self.server.shutdown()
        self.server.server_close()


class GrpcDouble(_Double):
    """A ``PredictionServiceServicer`` (Predict, Classify, Regress, GetModelMetadata) on 127.0.0.1."""

    def __init__(self, served, lifetime=120.0, port=0):
        import grpc
        from tensorflow.core.protobuf import meta_graph_pb2
        from tensorflow_serving.apis import (
            get_model_metadata_pb2,
            predict_pb2,
            prediction_service_pb2_grpc,
        )

        super().__init__(served, lifetime)
        double = self

        def check_spec(spec, context):
            """The ServedModel the request's model spec names (NOT_FOUND if none)."""
            version = spec.version.value if spec.HasField("version") else None
            served = double.model(spec.name, version)
            if served is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({spec.name}, {version})")
            return served

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                if double.faults.delay:
                    threading.Event().wait(double.faults.delay)
                if double.faults.take():
                    context.abort(grpc.StatusCode.UNAVAILABLE, "Servable not available (simulated)")
                served = check_spec(request.model_spec, context)
                signature = request.model_spec.signature_name or "serving_default"
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                try:
                    outputs = served.run(signature, inputs)
                except tf.errors.InvalidArgumentError as error:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
                except (KeyError, ValueError) as error:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error).strip('"'))
                response = predict_pb2.PredictResponse()
                response.model_spec.name = served.name
                response.model_spec.version.value = served.version
                response.model_spec.signature_name = signature
                for key, value in outputs.items():
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
                return response

            def Classify(self, request, context):
                served = check_spec(request.model_spec, context)
                return _example_response(served, "classify", request, context.abort)

            def Regress(self, request, context):
                served = check_spec(request.model_spec, context)
                return _example_response(served, "regress", request, context.abort)

            def GetModelMetadata(self, request, context):
                served = check_spec(request.model_spec, context)
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                for name, fn in served.loaded.signatures.items():
                    sig = meta_graph_pb2.SignatureDef(method_name=served.signature_def[name].method_name)
                    for group, specs in (("inputs", fn.structured_input_signature[1]), ("outputs", fn.structured_outputs)):
                        for key, spec in specs.items():
                            info = getattr(sig, group)[key]
                            info.name = f"{name}_{key}:0"
                            info.dtype = spec.dtype.as_datatype_enum
                            info.tensor_shape.CopyFrom(spec.shape.as_proto())
                    signature_map.signature_def[name].CopyFrom(sig)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = served.name
                response.model_spec.version.value = served.version
                response.metadata["signature_def"].Pack(signature_map)
                return response

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def _serve(self):
        self.server.start()

    def _shut_down(self):
        self.server.stop(grace=0)
