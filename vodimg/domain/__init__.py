"""Domain services: accounts/applications/keys and image async processing templates."""
