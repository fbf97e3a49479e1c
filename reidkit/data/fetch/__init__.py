"""Getting datasets onto the disk: downloads (checked, resumable) and installing the
archives users bring into the layout reidkit reads."""
