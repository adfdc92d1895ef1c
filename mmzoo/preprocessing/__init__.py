"""mmzoo.preprocessing"""
