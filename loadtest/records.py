"""What the client observed for one request. Pure data: the stats, reports and SLO checks work on these."""

from __future__ import annotations

from pydantic import BaseModel, Field

# Error kinds a request can end with; the report counts each separately.
ERROR_KINDS = ("rejected", "unavailable", "timeout", "http_error", "connection", "stream", "cancelled")


class RequestRecord(BaseModel):
    """One request as seen by the client. Times in seconds; offsets relative to the start of its phase."""

    index: int = Field(description="position in the workload (the same prompt for every variant)")
    variant: str
    scheduled_s: float = Field(description="when the profile wanted it sent")
    start_s: float = Field(description="when it was sent")
    ttft_s: float | None = None
    e2el_s: float | None = None
    itl_s: list[float] = Field(default_factory=list, exclude=True, description="gaps between output chunks")
    prompt_tokens: int | None = Field(default=None, description="from the server's usage, when it sends one")
    output_tokens: int = 0
    error: str | None = Field(default=None, description=f"one of {', '.join(ERROR_KINDS)}; None = success")
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tpot_s(self) -> float | None:
        """(e2e - TTFT) / (output tokens - 1), as `vllm bench serve` defines TPOT; None below two tokens."""
        if self.ttft_s is None or self.e2el_s is None or self.output_tokens < 2:
            return None
        return (self.e2el_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def itl_mean_s(self) -> float | None:
        return sum(self.itl_s) / len(self.itl_s) if self.itl_s else None
