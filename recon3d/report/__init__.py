"""Looking at a built dataset: an HTML report and a measure of the emotion it carries."""
