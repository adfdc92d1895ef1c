"""mmzoo.export"""
