"""Reading dlib's own serialization (dlib/serialize.h) and the DNN layer records in it, without dlib.

Nothing is unpickled or executed: the file is a byte stream of dlib's primitive encodings, read here
field by field in the order dlib's `serialize()` functions write them.

Primitives (serialize.h):
  - integer: a control byte (bit 7: negative; bits 0-3: how many magnitude bytes follow; bits 4-6
    always 0), then the magnitude, little endian. 0 is written as 01 00.
  - float/double: dlib's float_details, the int64 mantissa then the int16 exponent, each as an integer
    above; the value is mantissa * 2**exponent (exponents 32000/32001/32002 mean inf, -inf, nan).
  - bool: the ASCII byte '1' or '0'.
  - string: its length as an integer, then the bytes.
  - resizable_tensor (dnn/tensor.h): an int version (2: raw little-endian float32 data; 1: each value
    as a dlib float), then num_samples, k, nr, nc, then the values.
  - alias_tensor: int version 1, then its four dimensions; a view into a layer's params, no data.

A network (dnn/core.h) is written from the loss layer down: every wrapper writes its version and then
its whole subnetwork before its own fields. So the file holds all the versions top-down, then the
input layer, then each computational layer's record bottom-up. Tags and skips write only a version and
carry no ID: the topology lives in the C++ type, not in the file, so the reader is told the chain of
wrappers it should find (`read_network`) and checks every field against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfake.errors import DeepfakeError

_INF, _NINF, _NAN = 32000, 32001, 32002  # float_details' special exponents
WRAPPERS = ("loss", "layer", "tag", "skip")


@dataclass
class Record:
    """One layer of a dlib network: its dlib record name ('con_4', ...), hyperparameters and tensors."""

    kind: str  # 'input', 'con', 'affine', 'relu', 'max_pool', 'avg_pool', 'add_prev', 'fc', 'loss_metric', 'tag', 'skip'
    name: str = ""
    attrs: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)  # name -> float32 array shaped as dlib's alias_tensor


class DlibStream:
    """A cursor over the bytes of one dlib file; every read names what it expected when it fails."""

    def __init__(self, data: bytes, path):
        self.data = memoryview(data)
        self.path = str(path)
        self.pos = 0

    def error(self, expected: str, found: str = "") -> DeepfakeError:
        what = f"; found {found}" if found else ""
        return DeepfakeError(f"{self.path}: not a dlib network file of the expected kind: expected {expected} at byte {self.pos}{what}")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise DeepfakeError(
                f"{self.path}: truncated or corrupt dlib file: it ends at byte {len(self.data)} while reading {what} "
                f"({n} bytes needed at byte {self.pos})"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self, what: str) -> int:
        start = self.pos
        ctrl = self.take(1, what)[0]
        size = ctrl & 0x0F
        if ctrl & 0x70 or size > 8:
            self.pos = start
            raise self.error(f"{what} (a dlib integer)", f"control byte 0x{ctrl:02x}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if ctrl & 0x80 else value

    def count(self, what: str, limit: int | None = None) -> int:
        """A non-negative integer (a size, dimension or version), optionally bounded."""
        start = self.pos
        v = self.integer(what)
        if v < 0 or (limit is not None and v > limit):
            self.pos = start
            raise self.error(what, str(v))
        return v

    def real(self, what: str) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.error(f"{what} (a binary dlib float; the old text format is not read)")
        mantissa = self.integer(what + " mantissa")
        exponent = self.integer(what + " exponent")
        if exponent == _INF:
            return math.inf
        if exponent == _NINF:
            return -math.inf
        if exponent == _NAN:
            return math.nan
        try:
            if abs(exponent) < 1 << 15:  # float_details' exponent is an int16
                return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            pass
        raise self.error(f"{what} (a finite dlib float)", f"mantissa {mantissa}, exponent {exponent}")

    def boolean(self, what: str) -> bool:
        b = self.take(1, what)[0]
        if b not in (0x30, 0x31):
            self.pos -= 1
            raise self.error(f"{what} (a bool, '0' or '1')", f"0x{b:02x}")
        return b == 0x31

    def string(self, what: str, limit: int = 256) -> str:
        n = self.count(f"the length of {what}", limit)
        raw = bytes(self.take(n, what))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            self.pos -= n
            raise self.error(what, "non-ASCII bytes") from None

    def version(self, what: str, allowed: tuple[int, ...]) -> int:
        start = self.pos
        v = self.integer(f"the version of {what}")
        if v not in allowed:
            self.pos = start
            raise self.error(f"{what} version {' or '.join(map(str, allowed))}", str(v))
        return v

    def dims(self, what: str) -> tuple[int, int, int, int]:
        return tuple(self.count(f"{what} dimension", 1 << 31) for _ in range(4))  # (n, k, nr, nc)

    def tensor(self, what: str) -> np.ndarray:
        v = self.version(what, (1, 2))
        shape = self.dims(what)
        size = math.prod(shape)
        if v == 2:
            raw = self.take(4 * size, f"the {size} float32 values of {what}")
            return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        if 4 * size > len(self.data) - self.pos:  # each value takes at least 4 bytes; fail before looping
            self.take(4 * size, f"the {size} float values of {what}")
        return np.array([self.real(f"{what} value") for _ in range(size)], dtype=np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        self.version(what, (1,))
        return self.dims(what)


# ----------------------------------------------------------------------------------------------------
# Layer records (dnn/input.h, layers.h, loss.h), each introduced by its name-and-version string.


def _split_params(s: DlibStream, params: np.ndarray, views: dict[str, tuple], what: str) -> dict[str, np.ndarray]:
    """Cut a layer's flat params tensor into the alias views dlib declares over it, in order."""
    flat, out, at = params.reshape(-1), {}, 0
    for name, shape in views.items():
        n = math.prod(shape)
        out[name] = flat[at : at + n].reshape(shape)
        at += n
    if at != flat.size:
        raise s.error(f"{what} params of {at} values (the sum of its views)", f"{flat.size} values")
    return out


def _multipliers(s: DlibStream, what: str) -> None:
    for m in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        s.real(f"{what} {m} multiplier")


def _con(s: DlibStream, name: str) -> Record:
    params = s.tensor("con_ params")
    a = {"filters": s.count("con_ num_filters"), "nr": s.count("con_ nr"), "nc": s.count("con_ nc")}
    a |= {"stride_y": s.count("con_ stride_y"), "stride_x": s.count("con_ stride_x")}
    a |= {"padding_y": s.count("con_ padding_y"), "padding_x": s.count("con_ padding_x")}
    views = {"weight": s.alias("con_ filters"), "bias": s.alias("con_ biases")}
    _multipliers(s, "con_")
    a["use_bias"] = s.boolean("con_ use_bias") if name in ("con_5", "con_6") else True
    if name == "con_6" and s.boolean("con_ use_relu"):
        raise s.error("a con_ without its fused relu (not supported)")
    views = {k: v for k, v in views.items() if math.prod(v) > 0}
    return Record("con", name, a, _split_params(s, params, views, name))


def _affine(s: DlibStream, name: str) -> Record:
    params = s.tensor("affine_ params")
    views = {"gamma": s.alias("affine_ gamma"), "beta": s.alias("affine_ beta")}
    a = {"mode": s.count("affine_ mode", 1)}  # 0: per channel (CONV_MODE), 1: per element (FC_MODE)
    if name == "affine_2" and s.boolean("affine_ disabled"):
        raise s.error("an enabled affine_ layer")
    return Record("affine", name, a, _split_params(s, params, views, name))


def _pool(kind: str):
    def read(s: DlibStream, name: str) -> Record:
        a = {"nr": s.count(f"{name} nr"), "nc": s.count(f"{name} nc")}
        a |= {"stride_y": s.count(f"{name} stride_y"), "stride_x": s.count(f"{name} stride_x")}
        a |= {"padding_y": s.count(f"{name} padding_y"), "padding_x": s.count(f"{name} padding_x")}
        return Record(kind, name, a)

    return read


def _fc(s: DlibStream, name: str) -> Record:
    a = {"outputs": s.count("fc_ num_outputs"), "inputs": s.count("fc_ num_inputs")}
    params = s.tensor("fc_ params")
    views = {"weight": s.alias("fc_ weights"), "bias": s.alias("fc_ biases")}
    a["use_bias"] = s.count("fc_ bias_mode", 1) == 0  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    _multipliers(s, "fc_")
    views = {k: v for k, v in views.items() if math.prod(v) > 0}
    return Record("fc", name, a, _split_params(s, params, views, name))


def _input_rgb(s: DlibStream, name: str) -> Record:
    mean = tuple(s.real(f"input_rgb_image_sized avg_{c}") for c in ("red", "green", "blue"))
    return Record("input", name, {"mean": mean, "nr": s.count("input nr"), "nc": s.count("input nc")})


def _loss_metric(s: DlibStream, name: str) -> Record:
    return Record("loss_metric", name, {"margin": s.real("loss_metric_ margin"), "distance_threshold": s.real("loss_metric_ dist_thresh")})


_READERS = {
    "con_4": _con, "con_5": _con, "con_6": _con,
    "affine_": _affine, "affine_2": _affine,
    "relu_": lambda s, name: Record("relu", name),
    "add_prev_": lambda s, name: Record("add_prev", name),
    "max_pool_2": _pool("max_pool"), "avg_pool_2": _pool("avg_pool"),
    "fc_2": _fc,
    "input_rgb_image_sized": _input_rgb,
    "loss_metric_2": _loss_metric,
}


def read_record(s: DlibStream, where: str) -> Record:
    start = s.pos
    name = s.string(f"the record name of {where}", limit=64)
    if name not in _READERS:
        s.pos = start
        raise s.error(f"a dlib layer record this reader knows for {where}", repr(name[:40]))
    return _READERS[name](s, name)


def _layer_trailer(s: DlibStream, version: int, innermost: bool) -> None:
    """The bookkeeping add_layer writes after its details: flags and (normally empty) work tensors."""
    for f in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        s.boolean(f"add_layer {f}")
    s.tensor("add_layer x_grad")
    s.tensor("add_layer cached_output")
    if innermost:
        s.tensor("add_layer grad_final")
        if version >= 3:
            s.count("add_layer sample_expansion_factor")
    elif version >= 2:
        s.tensor("add_layer params_grad")


def read_network(path, chain: list[str]) -> list[Record]:
    """The layer records of a dlib network file, input first.

    `chain` is the network's wrappers from the loss layer down, each 'loss', 'layer' (add_layer of a
    computational layer), 'tag' or 'skip'; the last one is the add_layer that sits on the input layer.
    Tags and skips come back as records without data, in their places.
    """
    if not chain or chain[-1] != "layer" or any(w not in WRAPPERS for w in chain):
        raise ValueError("chain must name wrappers top-down and end with the 'layer' above the input")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DeepfakeError(f"{path}: cannot read the dlib model file ({e.strerror or e})") from None
    s = DlibStream(data, path)

    # Versions top-down; the loss layer writes its own record before its subnetwork.
    top: list = []
    for i, w in enumerate(chain):
        where = "the loss layer" if w == "loss" else f"layer {i} from the output ({w})"
        if w == "loss":
            s.version(where, (1,))
            top.append(read_record(s, where))
        elif w in ("tag", "skip"):
            s.version(where, (1,))
            top.append(Record(w))
        else:
            top.append(s.version(where, (2, 3) if i == len(chain) - 1 else (1, 2)))

    # Then the input layer, then every computational layer's record and trailer bottom-up.
    layers = [read_record(s, "the input layer")]
    for i in reversed(range(len(chain))):
        if isinstance(top[i], int):
            rec = read_record(s, f"layer {i} from the output")
            _layer_trailer(s, top[i], innermost=i == len(chain) - 1)
            layers.append(rec)
        else:
            layers.append(top[i])
    if s.pos != len(data):
        raise s.error("the end of the file", f"{len(data) - s.pos} more bytes")
    return layers
