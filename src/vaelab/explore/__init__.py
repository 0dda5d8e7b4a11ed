"""`vaelab explore`: a small web app to move through a trained model's latent space (the `explore` extra).

`state.Explorer` holds the model and draws the pictures; `app.create_app` serves them over HTTP.
Only `app` needs Starlette: import it where the extra is known to be installed.
"""
