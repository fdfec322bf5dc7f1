"""Occlusion-aware masks: a U-Net segmenter (models/segmenter.py) trained on the user's own faces, first
on hull masks, then on polygons the user labels (DeepFaceLab's XSeg idea).

checks.py the config checks (the configs are deepfake.config's); labels.py the labels.json file; jpeg.py and augment.py the device augmentation;
data.py the faces and targets; checkpoint.py the mask model folder; train.py the loop; apply.py
prediction and writing masks into a faceset; preview.py masks drawn over faces; export.py the sheet of
faces worth labelling; labelme.py importing polygons drawn in LabelMe.
"""
