"""Pelage-pattern extraction (NORPPA): a U-Net that maps an animal photo to a pattern image."""
