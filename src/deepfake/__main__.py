from deepfake.cli import entry

entry()
