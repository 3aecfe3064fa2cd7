"""What the access-control tests share: the secret the pools are started with."""
SECRET = "correct horse battery staple, 32+"
