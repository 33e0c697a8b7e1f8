"""Segmentation models: semantic (FCN, U-Net, SegNet, PSPNet) and instance."""
