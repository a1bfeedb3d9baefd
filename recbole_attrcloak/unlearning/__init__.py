"""Post-training defences that fine-tune a trained RecBole model through its trainer hooks."""
