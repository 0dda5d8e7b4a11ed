"""The networks of the five seed systems, the residual ones (`resnet`, `hvae`) and the disentanglement
studies' `shapes-conv`; importing this package registers them."""

from . import cifar128, conv16, cvae2, hvae, keras_conv2, mlp2, resnet, shapes_conv  # noqa: F401
