"""The networks of the five seed systems and the residual ones (`resnet`, `hvae`); importing this package
registers them."""

from . import cifar128, conv16, cvae2, hvae, keras_conv2, mlp2, resnet  # noqa: F401
