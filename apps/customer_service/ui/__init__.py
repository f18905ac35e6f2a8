"""The support agents' console (Streamlit): ``streamlit run apps/customer_service/ui/app.py``."""
