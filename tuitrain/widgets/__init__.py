"""The dashboard's panels, one per module. None of them imports torch."""
