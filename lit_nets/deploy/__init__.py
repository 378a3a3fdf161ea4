"""Using a trained model: rebuild it from its checkpoint, export, explain and serve it. Uses core only, never train."""
