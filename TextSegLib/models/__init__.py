"""Segmentation models of TextSeg.

``sat``: an independent PyTorch implementation of SAT-Nano / SAT-Pro
(text-prompted 3D segmentation), its checkpoint loader, its text encoder and
the cached query table. Import ``TextSegLib.models.sat`` (needs torch).
"""
