"""Export a trained model as one ONNX graph that DeepFaceLive and FaceFusion load (DeepFaceLab's DFM
contract), or in our own crop for our own runtime.

crop.py: the DFL whole-face crop and the fixed similarity between it and ours (pure geometry).
graph.py: the torch module that is traced: colour order, resampling, encoder, both decoders.
write.py: `deepfake export` as a library call (weights, tracing, fp16, metadata, atomic write).
runtime.py: reading such a file back (the contract's checks) and running it as swap's FaceModel.
"""
