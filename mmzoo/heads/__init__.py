"""mmzoo.heads"""
