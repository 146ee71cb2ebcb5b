"""gansampler: post-hoc sampling service for trained GANs."""
