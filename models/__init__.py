"""The GPT model (models.gpt) and its decoding loop (models.generation), plain torch."""
