"""The analysts' dashboard of the finance-sentiment monitor (Streamlit)."""
