"""Import the shipped families so that they register themselves."""
from . import sharpness  # noqa: F401
from . import goldilocks  # noqa: F401
from . import weight_decay  # noqa: F401
from . import circuits  # noqa: F401
from . import double_descent  # noqa: F401
from . import interventions  # noqa: F401
