"""Pure transforms: text, administrative units, routing and the document an agency receives."""
