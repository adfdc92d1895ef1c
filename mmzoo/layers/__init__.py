"""mmzoo.layers"""
