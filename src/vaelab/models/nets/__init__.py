"""The networks of the five seed systems; importing this package registers them."""

from . import cifar128, conv16, cvae2, keras_conv2, mlp2  # noqa: F401
