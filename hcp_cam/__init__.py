"""hcp-cam: Class Activation Maps of age from HCP diffusion MRI, MONAI-native.

Data flows one way: files -> :mod:`hcp_cam.transforms` -> :mod:`hcp_cam.networks`
-> :mod:`hcp_cam.cam` -> files.
"""

from hcp_cam.errors import HcpCamError, InputError

# the one version number: pyproject reads it, the bundle's metadata.json requires it
__version__ = "0.2.0"
__all__ = ["HcpCamError", "InputError", "__version__"]
