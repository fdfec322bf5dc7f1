"""Job requests: the JSON a page posts, checked, and turned into the CLI's own argv.

Each request model is generated from the same declaration as the command's options (deepfake.config,
`option(...)`): its fields are the command's flags with underscores, with their choices, ranges and help.
Only what is the workspace's own is declared here: the names of facesets, models and inputs, which the
plan resolves to paths. An option left out (or null) is left off the command line, so the CLI's defaults
apply and the page never restates them. Every path goes through the workspace's check; values go as `--opt=value`, one
argv item each, so nothing a request holds can read as another option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from deepfake.config import (CleanThresholds, DetectConfig, EvaluateConfig, EvaluateRun, ExtractConfig,
                             FacesetInfoConfig, MaskTrainConfig, PretrainRun, SegmentApplyConfig, SegmentRun,
                             SweepConfig, SwapConfig, TrainConfig, TrainRun)
from deepfake.config.options import spec_fields
from deepfake.errors import DeepfakeError
from deepfake.ui.workspace import Workspace, model_kind

Positive = Annotated[int, Field(ge=1, le=10_000_000)]
SetItem = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.]*=[^\s]+$", max_length=200)]
GridItem = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.]*=[^\s=]+$", max_length=400)]


class SpecError(DeepfakeError):
    """A job request that does not validate (HTTP 400)."""


@dataclass
class Plan:
    argv: list[str]  # after `deepfake`
    title: str
    resource: str | None  # the device the job occupies; None: starts at once
    targets: dict[str, str] = field(default_factory=dict)  # what the job is about (faceset, model, output)
    capture: bool = False  # stdout is the job's result (JSON)
    dedupe: str | None = None


def _opts(values: dict[str, Any]) -> list[str]:
    """`--name=value` for each given value; True -> `--name`; None and False are left off."""
    out = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        out.append(flag if value is True else f"{flag}={value}")
    return out


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExtractJob(Spec):
    kind: Literal["extract"]
    inputs: list[str] = Field(min_length=1, max_length=200)
    faceset: str
    reference: list[str] = Field(default_factory=list, max_length=20)

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        out = ws.child("facesets", self.faceset, must_exist=False)
        inputs = [str(ws.resolve_input(p, "inputs")) for p in self.inputs]
        refs = [str(ws.resolve_input(p, "inputs")) for p in self.reference]
        opts = self.model_dump(exclude={"kind", "inputs", "faceset", "reference"})
        argv = ["extract", *inputs, f"--output={out}", *_opts(opts)]
        if refs:
            argv += ["--reference", *refs]
        # dlib detection runs on the CPU whatever the machine has.
        return Plan(argv, f"extract {len(inputs)} input(s) -> {self.faceset}", "cpu", {"faceset": self.faceset})


Extract = create_model("Extract", __base__=ExtractJob, **spec_fields(ExtractConfig))


class FacesetInfoJob(Spec):
    kind: Literal["faceset_info"]
    faceset: str

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        path = ws.child("facesets", self.faceset)
        argv = ["faceset", "info", str(path), *_opts(self.model_dump(exclude={"kind", "faceset"}))]
        return Plan(argv, f"faceset info {self.faceset}", None, {"faceset": self.faceset}, dedupe=f"info:{self.faceset}")


FacesetInfo = create_model("FacesetInfo", __base__=FacesetInfoJob, **spec_fields(FacesetInfoConfig))


# deepfake faceset clean's thresholds; null turns one off ('none' on the command line).
Thresholds = create_model("Thresholds", __base__=Spec, **spec_fields(CleanThresholds, keep_defaults=True))


class FacesetClean(Spec):
    kind: Literal["faceset_clean"]
    faceset: str
    thresholds: Thresholds

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        path = ws.child("facesets", self.faceset)
        opts = [f"--{k.replace('_', '-')}={'none' if v is None else v}" for k, v in self.thresholds.model_dump().items()]
        return Plan(["faceset", "clean", str(path), *opts], f"clean {self.faceset}", None,
                    {"faceset": self.faceset}, dedupe=f"clean:{self.faceset}")


class TrainJob(Spec):
    kind: Literal["train"]
    a: str
    b: str
    model: str
    set: list[SetItem] = Field(default_factory=list, max_length=50)
    start_from: str | None = None  # a model in models/ whose weights a new run starts from (train --from)

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        a, b = ws.child("facesets", self.a), ws.child("facesets", self.b)
        out = _model_folder(ws, self.model, "swap", must_exist=False)
        opts = self.model_dump(exclude={"kind", "a", "b", "model", "set", "start_from"})
        if self.start_from is not None:
            opts["from"] = str(_model_folder(ws, self.start_from, "swap"))
        elif opts.get("reset") is not None:
            raise SpecError("reset: needs start_from (the model to start from)")
        argv = ["train", f"--a={a}", f"--b={b}", f"--out={out}", *_opts(opts), *(f"--set={s}" for s in self.set)]
        resumed = (out / "config.json").is_file()
        verb = "resume" if resumed else "train"
        return Plan(argv, f"{verb} {self.model} ({self.a} + {self.b})", device(_run_device(out, self.device)),
                    {"model": self.model})


def _run_device(out: Path, given: str | None) -> str | None:
    """The device a training job asks for: the one given, else a resumed folder's own."""
    if given is not None or not (out / "config.json").is_file():
        return given
    from deepfake.model_dir import read_config

    try:
        return read_config(out).device
    except DeepfakeError:
        return None


# A run's options, then the TrainConfig's: those given override the preset's (or the resumed folder's).
Train = create_model("Train", __base__=TrainJob, **spec_fields(TrainRun),
                     **spec_fields(TrainConfig, overrides=True))


class PretrainJob(Spec):
    """`deepfake pretrain`: one autoencoder on the faces of many people (DeepFaceLab's pretrain rules),
    for a Train run's "start from". A folder that exists is resumed, with the same facesets."""

    kind: Literal["pretrain"]
    facesets: list[str] = Field(min_length=1, max_length=50)
    model: str  # a folder in models/
    set: list[SetItem] = Field(default_factory=list, max_length=50)

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        folders = [str(ws.child("facesets", f)) for f in self.facesets]
        out = _model_folder(ws, self.model, "swap", must_exist=False)
        opts = self.model_dump(exclude={"kind", "facesets", "model", "set"})
        argv = ["pretrain", *folders, f"--out={out}", *_opts(opts), *(f"--set={s}" for s in self.set)]
        verb = "resume pretraining" if (out / "config.json").is_file() else "pretrain"
        return Plan(argv, f"{verb} {self.model} ({', '.join(self.facesets)})", device(_run_device(out, self.device)),
                    {"model": self.model})


Pretrain = create_model("Pretrain", __base__=PretrainJob, **spec_fields(PretrainRun),
                        **spec_fields(TrainConfig, overrides=True))


def _model_folder(ws: Workspace, name: str, kind: str, must_exist: bool = True) -> Path:
    """models/NAME, refused when it holds the other kind of model (a mask model is no face swapper)."""
    path = ws.child("models", name, must_exist=must_exist)
    found = model_kind(path) if path.exists() else None
    if found is not None and found != kind:
        want = "a face-swap model (deepfake train)" if kind == "swap" else "a mask model (deepfake mask train)"
        raise SpecError(f"models/{name}: not {want}")
    return path


class SwapJob(Spec):
    kind: Literal["swap"]
    model: str
    input: str
    output: str | None = None  # a name in outputs/ (default: INPUT_swap_MODEL.EXT)
    mask_model: str | None = None  # a mask model in models/: the segmenter of the segmenter masks

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        model = _model_folder(ws, self.model, "swap")
        source = ws.resolve_input(self.input, "inputs")
        suffix = ".png" if self.preview else ("" if source.is_dir() else source.suffix.lower())
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", source.stem)
        name = self.output or f"{stem}_{'preview' if self.preview else 'swap'}_{self.model}{suffix}"
        out = ws.child("outputs", name, must_exist=False)
        opts = self.model_dump(exclude={"kind", "model", "input", "output"})
        if self.mask_model is not None:
            opts["mask_model"] = str(_model_folder(ws, self.mask_model, "mask"))
        argv = ["swap", str(source), f"--model={model}", f"--output={out}", *_opts(opts)]
        return Plan(argv, f"swap {source.name} with {self.model} -> {name}", device(self.device),
                    {"model": self.model, "output": ws.rel(out), "input": ws.rel(source)})


Swap = create_model("Swap", __base__=SwapJob, **spec_fields(SwapConfig))


class EvaluateJob(Spec):
    kind: Literal["evaluate"]
    model: str
    a: str
    b: str
    output: str | None = None  # a folder name in outputs/ (default: eval_MODEL)
    frames: str | None = None  # a video in inputs/ for the flicker measure

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        model = _model_folder(ws, self.model, "swap")
        a, b = ws.child("facesets", self.a), ws.child("facesets", self.b)
        name = self.output or f"{'timeline' if self.timeline else 'eval'}_{self.model}"
        out = ws.child("outputs", name, must_exist=False)
        frames = str(ws.resolve_input(self.frames, "inputs")) if self.frames else None
        opts = {**self.model_dump(exclude={"kind", "model", "a", "b", "output", "frames"}), "frames": frames}
        argv = ["evaluate", f"--model={model}", f"--a={a}", f"--b={b}", f"--output={out}", *_opts(opts)]
        verb = "timeline of" if self.timeline else "evaluate"
        return Plan(argv, f"{verb} {self.model} -> {name}", device(self.device),
                    {"model": self.model, "output": ws.rel(out)})


Evaluate = create_model("Evaluate", __base__=EvaluateJob, **spec_fields(EvaluateRun), **spec_fields(EvaluateConfig))


class SweepJob(Spec):
    kind: Literal["sweep"]
    a: str
    b: str
    output: str
    grid: list[GridItem] = Field(min_length=1, max_length=20)

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        a, b = ws.child("facesets", self.a), ws.child("facesets", self.b)
        out = ws.child("outputs", self.output, must_exist=False)
        opts = self.model_dump(exclude={"kind", "a", "b", "output", "grid"})
        argv = ["sweep", f"--a={a}", f"--b={b}", f"--output={out}", *_opts(opts), "--grid", *self.grid]
        return Plan(argv, f"sweep {len(self.grid)} knob(s) -> {self.output}", device(self.device),
                    {"output": ws.rel(out)})


Sweep = create_model("Sweep", __base__=SweepJob, **spec_fields(SweepConfig))


class DetectJob(Spec):
    kind: Literal["detect"]
    inputs: list[str] = Field(min_length=1, max_length=50)
    model: str | None = None

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        files = [str(ws.resolve_input(p, ("inputs", "outputs"))) for p in self.inputs]
        model = str(_model_folder(ws, self.model, "swap")) if self.model else None
        opts = {"model": model, **self.model_dump(exclude={"kind", "inputs", "model"})}
        names = ", ".join(Path(f).name for f in files)
        # Without a model only tags are read: no device work, so it need not wait behind training.
        return Plan(["detect", *files, *_opts(opts), "--json"], f"detect {names}",
                    device(self.device) if model else None, {"model": self.model or ""}, capture=True)


Detect = create_model("Detect", __base__=DetectJob, **spec_fields(DetectConfig))


class MaskTrainJob(Spec):
    """`deepfake mask train`: a segmenter on facesets' hulls, then their labels.json. A folder that
    exists is resumed; `more_steps` trains that far past its latest weights (label, train more, look)."""

    kind: Literal["mask_train"]
    facesets: list[str] = Field(min_length=1, max_length=20)
    model: str  # a folder in models/
    more_steps: Positive | None = None
    set: list[SetItem] = Field(default_factory=list, max_length=50)

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        from deepfake.segment.checkpoint import CONFIG, SEGMENTER
        from deepfake.model_dir import step_of

        folders = [str(ws.child("facesets", f)) for f in self.facesets]
        out = _model_folder(ws, self.model, "mask", must_exist=False)
        opts = self.model_dump(exclude={"kind", "facesets", "model", "more_steps", "set"})
        if self.more_steps is not None:
            if self.steps is not None:
                raise SpecError("steps, more_steps: give one of them")
            weights = out / SEGMENTER
            opts["steps"] = ((step_of(weights) or 0) if weights.is_file() else 0) + self.more_steps
        argv = ["mask", "train", *folders, f"--out={out}", *_opts(opts), *(f"--set={s}" for s in self.set)]
        verb = "resume" if (out / CONFIG).is_file() else "train"
        return Plan(argv, f"mask {verb} {self.model} ({', '.join(self.facesets)})", device(self.device),
                    {"mask_model": self.model})


MaskTrain = create_model("MaskTrain", __base__=MaskTrainJob, **spec_fields(SegmentRun),
                         **spec_fields(MaskTrainConfig, overrides=True))


class MaskApplyJob(Spec):
    kind: Literal["mask_apply"]
    faceset: str
    model: str  # a mask model folder in models/

    def plan(self, ws: Workspace, device: Callable[[str | None], str]) -> Plan:
        path = ws.child("facesets", self.faceset)
        model = _model_folder(ws, self.model, "mask")
        argv = ["mask", "apply", str(path), f"--model={model}", *_opts(self.model_dump(exclude={"kind", "faceset", "model"}))]
        return Plan(argv, f"mask apply {self.model} -> {self.faceset}", device(self.device),
                    {"faceset": self.faceset, "mask_model": self.model})


MaskApply = create_model("MaskApply", __base__=MaskApplyJob, **spec_fields(SegmentApplyConfig))


JobSpec = Annotated[Union[Extract, FacesetInfo, FacesetClean, Train, Pretrain, Swap, Evaluate, Sweep, Detect, MaskTrain,
                          MaskApply],
                    Field(discriminator="kind")]
_ADAPTER = TypeAdapter(JobSpec)


def one_line(e: ValidationError) -> str:
    """Pydantic's first complaint as `where: what`."""
    err = e.errors()[0]
    where = ".".join(str(x) for x in err["loc"] if not (isinstance(x, str) and x in KINDS)) or "body"
    return f"{where}: {err['msg']}"


KINDS = ("extract", "faceset_info", "faceset_clean", "train", "pretrain", "swap", "evaluate", "sweep", "detect",
         "mask_train", "mask_apply")


def parse(data: Any) -> Spec:
    """A request body -> its Spec; SpecError (one line) when it does not validate."""
    if not isinstance(data, dict):
        raise SpecError("body: expected a JSON object")
    if data.get("kind") not in KINDS:
        raise SpecError(f"kind: expected one of {', '.join(KINDS)}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise SpecError(one_line(e)) from None


def openapi_body() -> tuple[dict[str, Any], dict[str, Any]]:
    """POST /api/jobs's request body for the app's OpenAPI schema: (the operation's requestBody, the job
    models for components/schemas). The route reads the body itself (a size limit, one-line errors)."""
    schema = _ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}, defs


def form_fields() -> dict[str, dict[str, dict[str, Any]]]:
    """kind -> field -> what a form needs to draw it (type, choices, default, range, help), from the job
    models: the page adds an input for each field its hand-laid form lacks, and fills its selects."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for model in _ADAPTER.json_schema()["$defs"].values():
        props = model.get("properties", {})
        kind = props.get("kind", {}).get("const")
        if not kind:
            continue
        for name, prop in props.items():
            if name == "kind":
                continue
            plain = next((a for a in prop.get("anyOf", [prop]) if a.get("type") != "null"), prop)
            out.setdefault(kind, {})[name] = {
                "type": plain.get("type", "object"), "enum": plain.get("enum"), "default": prop.get("default"),
                "min": plain.get("minimum", plain.get("exclusiveMinimum")), "max": plain.get("maximum"),
                "help": prop.get("description", ""),
            }
    return out


def form_choices() -> dict[str, dict[str, list[Any]]]:
    """kind -> field -> its choices, for the page's selects (the same lists the command line offers)."""
    return {kind: {name: f["enum"] for name, f in fields.items() if f["enum"]} for kind, fields in form_fields().items()}
