"""The Streamlit dashboard (app.py and pages/), its cached data access (services.py) and the plain logic its
pages lay out (logic.py). Start it with `alignops dashboard`; importing this package imports nothing heavy."""
