"""archsim: discrete-event simulation of DNN accelerators running compressed models."""
from .config import ArchSpec, load_arch
from .ir.errors import ArchsimError
from .version import COST_MODEL_VERSION, __version__

__all__ = ["ArchSpec", "ArchsimError", "COST_MODEL_VERSION", "__version__", "load_arch", "simulate"]


def simulate(*args, **kwargs):
    """See archsim.api.simulate (imported lazily: torch is only needed for nn.Modules)."""
    from .api import simulate as _simulate

    return _simulate(*args, **kwargs)
