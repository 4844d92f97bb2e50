"""What MLflow runs to load a registered model (MLflow models-from-code): it hands MLflow the pyfunc whose
predict takes prompts plus decoding params and returns completions (tracking.pyfunc_model). MLflow copies
this file into every registered model and executes it on load; alignops itself never imports it.

    mlflow models serve -m models:/alignops-policy@champion --env-manager local     # or: alignops serve
"""

from alignops import tracking

tracking.set_served_model()
