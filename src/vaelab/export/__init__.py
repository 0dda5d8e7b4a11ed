"""Using a trained model outside vaelab: latents as .npz files (`latents`), images read from paths and written
as PNGs (`images`), and the networks as ONNX files (`onnx`)."""
