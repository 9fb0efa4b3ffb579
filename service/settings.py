"""The fleet file: which replicas the gateway runs, how it routes between them, and its limits.

Loaded from YAML (or built by `service.default_fleet`), validated with pydantic, and overridable from the
environment: `SPARSEFLEET_<SECTION>__<FIELD>` (e.g. `SPARSEFLEET_ROUTING__POLICY=least_outstanding`,
`SPARSEFLEET_SERVER__PORT=9000`, `SPARSEFLEET_AUTH__API_KEYS=key1,key2`). The environment wins over the file.
Every field's `description` is the reference documentation (docs/service.md mirrors it).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from service.errors import ConfigError

ENV_PREFIX = "SPARSEFLEET_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


class _Strict(BaseModel):
    """Unknown keys are typos in a hand-written fleet file: reject them instead of ignoring them."""

    model_config = ConfigDict(extra="forbid")


class VllmEngineArgs(_Strict):
    """Arguments of an in-process vLLM engine (`kind: vllm`)."""

    dtype: str = Field("float32", description="Weight/activation dtype; float32 is fastest on AVX2 CPUs.")
    enforce_eager: bool = Field(
        True, description="Skip torch.compile/graph capture (30 s start instead of ~3 min)."
    )
    max_model_len: int = Field(2048, gt=0, description="Context length (prompt + output tokens) per request.")
    max_num_seqs: int = Field(64, gt=0, description="Sequences the engine batches together at most.")
    kv_cache_gib: float = Field(1.0, gt=0, description="KV-cache memory of this engine in GiB.")
    cpu_cores: str = Field(
        "auto",
        description="CPU cores for the engine's OpenMP threads (VLLM_CPU_OMP_THREADS_BIND), e.g. '0', '2-3'. "
        "'auto' gives each in-process engine its own share of the allowed cores; 'nobind' = unpinned.",
    )
    seed: int = Field(0, description="Engine seed (per-request `seed` still wins).")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Further vllm AsyncEngineArgs fields, passed through verbatim."
    )


class _ReplicaBase(_Strict):
    name: str = Field(
        description="Unique replica id; also accepted as `model`/`replica` to pin requests to it."
    )
    variant: str | None = Field(
        None,
        description="Variant label (e.g. dense, sparse-2:4). Default: `variant` of the checkpoint's "
        "prune_report.json, or 'dense' when there is none.",
    )
    max_concurrency: int | None = Field(
        None, gt=0, description="Requests handed to this engine at once; default `limits.max_concurrency`."
    )
    max_queue: int | None = Field(
        None, ge=0, description="Requests waiting for a slot before 429; default `limits.max_queue`."
    )

    @field_validator("name", "variant")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME_RE.match(value):
            raise ValueError(f"{value!r} must be 1-64 characters of letters, digits and _ . : -")
        return value


class VllmReplicaConfig(_ReplicaBase):
    """A vLLM engine inside the gateway process."""

    kind: Literal["vllm"] = "vllm"
    model: Path = Field(description="Checkpoint directory (Hugging Face layout, optional prune_report.json).")
    engine: VllmEngineArgs = Field(default_factory=VllmEngineArgs)


class RemoteReplicaConfig(_ReplicaBase):
    """An OpenAI-compatible `vllm serve` reached over HTTP."""

    kind: Literal["remote"]
    url: AnyHttpUrl = Field(description="Base URL of the server, e.g. http://10.0.0.5:8000 (without /v1).")
    served_model: str | None = Field(
        None, description="Model id on that server; default: the first it lists."
    )
    model: Path | None = Field(
        None, description="Local copy of the checkpoint, only to read prune_report.json."
    )
    api_key: SecretStr | None = Field(None, description="Bearer token the remote server expects.")
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP connect timeout.")
    read_timeout_s: float = Field(60.0, gt=0, description="Longest silence between two bytes of a response.")


def _replica_kind(value: Any) -> str:
    # `kind` may be left out of the file: an in-process vLLM engine is the default.
    if isinstance(value, dict):
        return str(value.get("kind", "vllm"))
    return str(getattr(value, "kind", "vllm"))


ReplicaConfig = Annotated[
    Annotated[VllmReplicaConfig, Tag("vllm")] | Annotated[RemoteReplicaConfig, Tag("remote")],
    Discriminator(_replica_kind),
]


class RoutingPolicy(StrEnum):
    weighted = "weighted"
    least_outstanding = "least_outstanding"


class RoutingConfig(_Strict):
    policy: RoutingPolicy = Field(
        RoutingPolicy.weighted,
        description="weighted: split unpinned traffic between variants by `weights` (smooth weighted "
        "round-robin, exact shares); least_outstanding: the healthy replica with the fewest requests.",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="Traffic share per variant for `weighted`; empty = equal shares; variants left out get "
        "no unpinned traffic (reachable only when pinned).",
    )
    failover: bool = Field(
        True,
        description="Retry on another replica of the same variant when one fails before its first token.",
    )

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        for variant, weight in weights.items():
            if weight < 0:
                raise ValueError(f"weight of {variant!r} must be >= 0, got {weight}")
        if weights and not any(w > 0 for w in weights.values()):
            raise ValueError("at least one variant needs a positive weight")
        return weights


class HealthConfig(_Strict):
    probe_interval_s: float = Field(5.0, gt=0, description="How often every replica's health is checked.")
    probe_timeout_s: float = Field(5.0, gt=0, description="A health check slower than this fails.")
    restart_dead_engines: bool = Field(True, description="Restart an in-process engine whose process died.")
    max_restarts: int = Field(3, ge=0, description="Restarts per replica before it stays failed.")


class LimitsConfig(_Strict):
    max_concurrency: int = Field(
        32, gt=0, description="Default requests per replica handed to its engine at once."
    )
    max_queue: int = Field(
        128, ge=0, description="Default requests per replica waiting for a slot; beyond: 429."
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="Whole-request deadline (queueing included): 504."
    )
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest accepted request body: 413 beyond.")
    default_max_tokens: int = Field(128, gt=0, description="`max_tokens` when a request gives none.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After header value sent with 429.")
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="How long in-flight requests may finish on shutdown."
    )


class AuthConfig(_Strict):
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens accepted on the generation routes; empty = no auth. From the environment "
        "as a comma-separated list (SPARSEFLEET_AUTH__API_KEYS). Never logged.",
    )
    protect_health: bool = Field(False, description="Also require a key on /health, /ready and /replicas.")
    protect_metrics: bool = Field(False, description="Also require a key on /metrics.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value


class ServerConfig(_Strict):
    host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0 for all).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = pick a free one).")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log verbosity.")


class FleetConfig(BaseSettings):
    """The whole fleet file. Sections: replicas, routing, health, limits, auth, server."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    replicas: list[ReplicaConfig] = Field(min_length=1, description="The replicas to run or reach.")
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init kwargs; the environment is listed first so that it overrides the file.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _unique_names(self) -> FleetConfig:
        seen: set[str] = set()
        for replica in self.replicas:
            if replica.name in seen:
                raise ValueError(f"replica name {replica.name!r} is used twice")
            seen.add(replica.name)
        return self


def load_fleet_file(path: Path) -> FleetConfig:
    """Read and validate a fleet YAML file; every problem becomes one ConfigError naming the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read fleet file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"fleet file {path} is not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"fleet file {path} must be a mapping with a `replicas` list")
    base = path.parent
    for replica in data.get("replicas") or []:
        # Relative checkpoint paths are relative to the fleet file, not to wherever the gateway was started.
        if isinstance(replica, dict) and isinstance(replica.get("model"), str):
            replica["model"] = str(base / Path(replica["model"]).expanduser())
    return build_fleet(data, source=str(path))


def build_fleet(data: dict[str, Any], *, source: str = "fleet") -> FleetConfig:
    try:
        return FleetConfig(**data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """First problem as 'field.path: message' (one line; secrets never echoed since input is not shown)."""
    first = exc.errors(include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "fleet"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
