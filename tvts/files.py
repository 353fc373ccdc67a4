"""The files of a model folder (what ``save_pretrained`` writes and every loader reads), named once."""

WEIGHTS_NAME = "model.safetensors"  # the weights (safetensors, loaded strictly)
CONFIG_NAME = "config.json"  # the ModelConfig (tvts.config)
PREPROCESSOR_NAME = "preprocessor.json"  # the video processor (tvts.data.processor)
