"""`laclip datasets get-eval`: evaluation sets copied from the Hugging Face hub into the store."""
