"""Offline training: fine-tune pretrained CNN backbones on an image folder and export model bundles."""
