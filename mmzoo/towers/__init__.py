"""mmzoo.towers"""
