"""The app's logic with no Qt: paths, settings, library, engine protocol."""
