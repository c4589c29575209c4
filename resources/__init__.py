"""Icons, styles and catalogs the app ships; installed as the package localai_app.resources."""
